"""Bare Celery: the same no-op as `bench.noop_plugin`, written as a plain `@app.task`.

`celery -A bench.bare_app worker` with BENCH_BROKER_URL (and BENCH_BARE_CONF=mirror|minimal).
BENCH_BARE_IMPORTS=sqlalchemy.orm,pydantic_settings imports those first: a Celery app
with the stack banktasks is built on, for the start-up floor.

`mirror` copies every setting of `core.create_app` that changes per-task work
(JSON only, acks_late + reject_on_worker_lost, prefetch 1, track_started and
task events (both off by default), result_extended, visibility timeout), so the
comparison measures the framework, not a configuration choice; `bench.celery_bench`
checks at run time that these values still equal the banktasks app's. `minimal` keeps only JSON,
acks_late and prefetch 1 (what the cost of banktasks' chosen settings is shows
as the difference). Celery's own logging stays on (`worker_hijack_root_logger`
default), as a bare Celery user would have it.
"""

from __future__ import annotations

import gc
import importlib
import os
from typing import Any

from celery import Celery

MINIMAL: dict[str, Any] = {
    "accept_content": ["json"],
    "task_serializer": "json",
    "result_serializer": "json",
    "result_accept_content": ["json"],
    "timezone": "UTC",
    "enable_utc": True,
    "task_acks_late": True,
    "worker_prefetch_multiplier": 1,
}

MIRROR: dict[str, Any] = {
    **MINIMAL,
    "result_expires": 86400,
    "result_extended": True,
    "task_reject_on_worker_lost": True,
    "task_track_started": False,
    "worker_send_task_events": False,
    "task_send_sent_event": False,
    "broker_connection_retry_on_startup": True,
    "broker_transport_options": {"visibility_timeout": 3600},
    "result_backend_transport_options": {"retry_policy": {"timeout": 5.0}},
}

CONFS = {"mirror": MIRROR, "minimal": MINIMAL}
TASK_NAME = "bench_bare.noop"
COLLECT_NAME = "bench_bare.collect"


def conf_for(spec: str) -> dict[str, Any]:
    """`mirror`, `minimal`, or `minimal+task_track_started+…` (adds those MIRROR keys)."""
    base, *added = spec.split("+")
    conf = dict(CONFS[base])
    for key in added:
        conf[key] = MIRROR[key]
    return conf


def make_app(url: str, conf: str = "mirror", set_as_current: bool = True) -> Celery:
    """A plain Celery app on `url` with one task, `bench_bare.noop(i)`."""
    app = Celery("bench_bare", broker=url, backend=url, set_as_current=set_as_current)
    app.conf.update(conf_for(conf))

    @app.task(name=TASK_NAME, shared=False)
    def noop(i: int) -> None:
        return None

    @app.task(name=COLLECT_NAME, shared=False)
    def collect() -> int:
        gc.collect()
        return os.getpid()

    return app


for _module in filter(None, os.environ.get("BENCH_BARE_IMPORTS", "").split(",")):
    importlib.import_module(_module)

app = (
    make_app(os.environ["BENCH_BROKER_URL"], os.environ.get("BENCH_BARE_CONF", "mirror"))
    if os.environ.get("BENCH_BROKER_URL")
    else None
)
