"""Fixtures of the fault-injection suite: figures, a stalling SMTP server, a private PostgreSQL.

Every scenario records its figures (tasks sent, completed, duplicates, lost, what
was injected) with the `figures` fixture; they are printed and merged into
`var/reliability/figures.json` (or the file named by `BANKTASKS_RELIABILITY_FIGURES`),
which is where the table in docs/reliability.md comes from.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from banktasks_testing import PgCluster, SMTPRecorder
from banktasks_testing.plugin import require_pg_bindir

ROOT = Path(__file__).resolve().parents[2]
FIGURES = Path(
    os.environ.get("BANKTASKS_RELIABILITY_FIGURES", ROOT / "var" / "reliability" / "figures.json")
)


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A dict the test fills with its figures; printed and saved when the test passes."""
    record: dict[str, Any] = {}
    started = time.monotonic()
    yield record
    report = getattr(request.node, "rep_call", None)
    if not record or report is None or not report.passed:
        return
    record["seconds"] = round(time.monotonic() - started, 1)
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    lock = FIGURES.with_suffix(".lock")
    with open(lock, "w") as fh:
        import fcntl

        fcntl.flock(fh, fcntl.LOCK_EX)
        data = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
        data[request.node.name] = record
        FIGURES.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    print(f"\nFIGURES {request.node.name}: {json.dumps(record, sort_keys=True, default=str)}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    """Keep each phase's report on the item, so `figures` knows whether the test passed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@dataclass
class StallingSMTP(SMTPRecorder):
    """The recording SMTP server, able to hold a client at `MAIL FROM` for as long as asked.

    While held, the server trickles `250-` continuation lines, so the client's
    socket timeout never fires: the client is kept *before* the message was sent
    (nothing accepted), for as long as the test needs to kill it.
    """

    stall_next: int = 0  # how many MAIL commands to hold
    mails: int = 0  # MAIL commands seen (one per delivery attempt that got that far)
    holding: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        self.mails += 1
        if self.stall_next > 0:
            self.stall_next -= 1
            self.holding.set()
            while not self.release.is_set():
                await server.push("250-still checking the sender")
                await asyncio.sleep(0.3)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    def message_ids(self) -> list[str]:
        """The Message-ID of every message accepted, in order."""
        return [str(m["Message-ID"]) for m in self.messages]


@pytest.fixture
def stalling_smtp() -> Iterator[StallingSMTP]:
    """A started StallingSMTP, stopped at teardown."""
    server = StallingSMTP().start()
    yield server
    server.release.set()
    server.stop()


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    """A private PostgreSQL cluster that the test may stop and start."""
    cluster = PgCluster(require_pg_bindir()).init()
    yield cluster
    cluster.destroy()
