"""`system_health_check`: run every registered check and return the summary."""

from __future__ import annotations

from typing import Any

from core import current_app, get_logger, task
from plugins.health.runner import run_checks

log = get_logger(__name__)


# acks_late (the default): a check whose worker dies is redelivered rather than lost
# (it would stay STARTED forever for whoever waits on it); running it twice is harmless.
# Read-only, so its result may be reused: with HEALTH_RESULT_CACHE_SECONDS set (off by
# default: a report should say what is true now), dashboards that call it every few
# seconds share one run.
@task(queue="health", example={}, cache_ttl=15)
def system_health_check() -> dict[str, Any]:
    """Run the health checks; return `status` (worst of all), `checks` and `checked_at`.

    Read-only and cheap: not retried (a health check reports, it does not retry). With
    HEALTH_RESULT_CACHE_SECONDS > 0, a call within that many seconds of the last run
    returns that run's report.
    """
    report = run_checks(current_app())
    for name, check in report["checks"].items():
        if check["status"] != "ok":
            log.warning(
                "health_check_not_ok", check=name, status=check["status"], detail=check["detail"]
            )
    log.info("health_checked", status=report["status"], checks=len(report["checks"]))
    return report
