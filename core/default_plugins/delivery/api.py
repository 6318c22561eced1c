"""One sweep of the `delivery` plugin: the outbox relay, then the reconciler."""

from __future__ import annotations

import time
from typing import Any

from core import get_logger
from core.default_plugins.delivery import ledger
from core.default_plugins.delivery.reconciler import sweep
from core.default_plugins.delivery.settings import DeliverySettings
from core.outbox import pending_count, relay

PLUGIN = "delivery"
log = get_logger("banktasks.delivery")


def settings_of(app: Any) -> DeliverySettings:
    """This app's `DELIVERY_*` settings."""
    settings = app.runtime.settings_for(PLUGIN)
    assert isinstance(settings, DeliverySettings)
    return settings


def sweep_once(app: Any) -> dict[str, Any]:
    """Relay committed outbox rows, then reconcile the ledger; return what was done.

    The relay's error (a database that is down, an outbox table not created) is
    reported and logged, and the reconciler runs anyway.
    """
    settings = settings_of(app)
    client = app.redis_client()
    outbox: dict[str, Any] = {"relayed": 0, "error": None}
    try:
        outbox["relayed"] = relay(
            app.runtime.db.engine, app.send_checked, older_than=settings.outbox_grace_seconds
        )
        if outbox["relayed"]:
            client.hincrby(ledger.STATS, "outbox_relayed", outbox["relayed"])
    except Exception as exc:
        outbox["error"] = f"{type(exc).__name__}: {exc}"[:300]
        log.warning("delivery.relay_failed", error=outbox["error"])
    options = app.conf.broker_transport_options
    report = sweep(
        client,
        grace=settings.grace_seconds,
        max_resends=settings.max_resends,
        result_key=lambda task_id: app.backend.get_key_for_task(task_id),
        unacked_key=options.get("unacked_key", "unacked"),
        lock_seconds=max(60, 4 * settings.sweep_seconds),
    )
    result = report.as_dict()
    result["outbox"] = outbox
    if report.resent or report.given_up or report.suspect or outbox["relayed"]:
        log.info(
            "delivery.swept",
            checked=report.checked,
            suspect=report.suspect,
            resent=len(report.resent),
            given_up=len(report.given_up),
            relayed=outbox["relayed"],
        )
    return result


def status(app: Any) -> dict[str, Any]:
    """What the ledger tracks and the reconciler did, and what waits in the outbox."""
    client = app.redis_client()
    settings = settings_of(app)
    now = time.time()
    oldest = client.zrange(ledger.SENT, 0, 0, withscores=True)
    totals = ledger.stats(client)
    last = totals.pop("last_sweep", None)
    try:
        pending, oldest_row = pending_count(app.runtime.db.engine)
        outbox: dict[str, Any] = {
            "pending": pending,
            "oldest": oldest_row.isoformat() if oldest_row else None,
        }
    except Exception as exc:
        outbox = {"pending": None, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {
        "tracked": ledger.tracked(client),
        "older_than_grace": int(client.zcount(ledger.SENT, "-inf", now - settings.grace_seconds)),
        "oldest_seconds": round(now - oldest[0][1], 1) if oldest else None,
        "suspect": int(client.zcard(ledger.SUSPECT)),
        "totals": {k: int(v) for k, v in sorted(totals.items())},
        "last_sweep_seconds_ago": round(now - last, 1) if last else None,
        "outbox": outbox,
    }
