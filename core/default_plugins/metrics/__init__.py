"""Default plugin `metrics`: Prometheus metrics of every banktasks task, and an
authenticated endpoint, `banktasks metrics serve`, that works without Flower.

Workers are instrumented through Celery signals (`worker`): tasks by name, queue
and state, run time and queue wait histograms, retries and dead letters, written
per pool process into METRICS_DIR (prometheus-client's multiprocess mode). The
endpoint (`collect`, `server`) adds those files up and computes the rest when
scraped: queue depth, workers up, beat entries' last success and due time, and
what each plugin returns from `collect_metrics`. Plugins declare their own worker
metrics with `register_metrics` (`hookspecs`). `BANKTASKS_DISABLE=metrics` turns
all of it off. See docs/metrics.md.
"""

from core.default_plugins.metrics.plugin import (
    configure_app,
    on_message_rejected,
    on_task_failed,
    register_commands,
    register_hookspecs,
    register_settings,
)

__all__ = [
    "configure_app",
    "on_message_rejected",
    "on_task_failed",
    "register_commands",
    "register_hookspecs",
    "register_settings",
]
