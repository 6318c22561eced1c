"""The worker side: the metric files folder, built-in task metrics, heartbeats.

Everything happens through Celery signals connected by `connect(app)` (from the
plugin's `configure_app`) and only in a worker: `worker_init` (the main process,
before the pool forks) points prometheus-client at the folder, wipes it when no
other worker uses it, and creates the metrics; task signals update them in the pool
processes, each writing its own file; `worker_process_shutdown` marks a dead pool
process; `worker_ready` starts the heartbeat on the worker's own timer.
"""

from __future__ import annotations

import fcntl
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from celery import signals

from core import SENT_AT_HEADER, BanktasksTask, get_logger, message_header
from core.db import make_private, private_dir
from core.default_plugins.metrics.api import SECONDS_BUCKETS, Metrics

log = get_logger("banktasks.metrics")
PLUGIN = "metrics"
WORKERS_KEY = "banktasks:metrics:workers"
"""Sorted set on the broker: worker host name → time of its last heartbeat."""
LOCK_FILE = ".workers.lock"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class TaskMetrics:
    """The built-in task metrics of one worker (created once, in its main process)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        labels = ("task", "queue")
        self.tasks = Counter(
            "banktasks_tasks",
            "Task runs by task, queue and the state the run ended in "
            "(success, failure, retry, ignored, rejected)",
            (*labels, "state"),
        )
        self.runtime = Histogram(
            "banktasks_task_runtime_seconds",
            "How long a task run took, in seconds",
            labels,
            buckets=SECONDS_BUCKETS,
        )
        self.queue_wait = Histogram(
            "banktasks_task_queue_wait_seconds",
            "Seconds from when a task message was sent (or its eta, if later) to its start",
            labels,
            buckets=SECONDS_BUCKETS,
        )
        self.retries = Counter(
            "banktasks_task_retries", "Retries a task asked for, by task and queue", labels
        )
        self.dead_letters = Counter(
            "banktasks_dead_letters",
            "Tasks that failed for good and messages set aside unread, by task and reason "
            "(the exception's class, or why a message was set aside)",
            ("task", "reason"),
        )
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._started: dict[str, tuple[float, str]] = {}

    def _for(self, task: str, queue: str) -> tuple[Any, Any]:
        children = self._children.get((task, queue))
        if children is None:
            children = (self.runtime.labels(task, queue), self.queue_wait.labels(task, queue))
            self._children[(task, queue)] = children
        return children

    def started(self, task: Any, task_id: str) -> None:
        """A run starts: its queue wait, and the clock for its run time."""
        request = task.request
        queue = _queue(task, request)
        self._started[task_id] = (time.perf_counter(), queue)
        waited_from = _waiting_since(request)
        if waited_from is not None:
            self._for(task.name, queue)[1].observe(max(0.0, time.time() - waited_from))

    def ended(self, task: Any, task_id: str, state: Any) -> None:
        """A run ended (in this process): its state and run time."""
        begun = self._started.pop(task_id, None)
        if begun is None:
            return
        moment, queue = begun
        self._for(task.name, queue)[0].observe(time.perf_counter() - moment)
        self.tasks.labels(task.name, queue, str(state or "unknown").lower()).inc()

    def failed_elsewhere(self, task: Any, task_id: str) -> None:
        """The worker's main process saw a run fail that no pool process finished (a hard
        time limit, a lost pool process): count it as a failure."""
        if task_id not in self._started:
            self.tasks.labels(task.name, _queue(task, task.request), "failure").inc()

    def retried(self, task: Any) -> None:
        """The running task asked for a retry."""
        self.retries.labels(task.name, _queue(task, task.request)).inc()

    def dead_letter(self, task: str, reason: str) -> None:
        """One dead letter."""
        self.dead_letters.labels(task, reason).inc()


def _queue(task: Any, request: Any) -> str:
    info = getattr(request, "delivery_info", None) or {}
    queue = info.get("routing_key") or getattr(task, "route_queue", None)
    return str(queue or "unknown")


def _waiting_since(request: Any) -> float | None:
    """When the message started to wait: max(sent-at header, eta); None without a header."""
    sent = message_header(request, SENT_AT_HEADER)
    if not isinstance(sent, int | float) or isinstance(sent, bool):
        return None
    start = float(sent)
    eta = getattr(request, "eta", None)
    if isinstance(eta, str):
        try:
            eta = datetime.fromisoformat(eta)
        except ValueError:
            eta = None
    if isinstance(eta, datetime) and eta.tzinfo is not None:
        start = max(start, eta.timestamp())
    return start


# --------------------------------------------------------------------- the files folder


def prepare_folder(folder: Path) -> int:
    """Make the folder owner-only, hold a shared lock on it for the life of this worker,
    and wipe the metric files first when no other worker holds one (safe: nothing writes
    them any more). Return the lock's file descriptor (kept open on purpose)."""
    private_dir(folder)
    make_private(folder)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.info("metrics_files_kept", folder=str(folder), reason="another worker uses them")
    else:
        removed = 0
        for path in folder.glob("*.db"):
            path.unlink(missing_ok=True)
            removed += 1
        log.info("metrics_files_wiped", folder=str(folder), files=removed)
    fcntl.flock(fd, fcntl.LOCK_SH)  # a pool process inherits it, so does an orphan
    return fd


def use_folder(folder: Path) -> None:
    """Point prometheus-client at `folder`, also when it was imported already."""
    os.environ[MULTIPROC_ENV] = str(folder)
    from prometheus_client import values

    values.ValueClass = values.get_value_class()


# ------------------------------------------------------------------------- heartbeat


def heartbeat(app: Any, hostname: str, client: Any) -> None:
    """Say this worker is up (one ZADD); a broker error is logged, never raised."""
    try:
        client.zadd(WORKERS_KEY, {hostname: time.time()})
    except Exception as exc:
        log.warning("metrics_heartbeat_failed", error=f"{type(exc).__name__}: {exc}")


def heartbeat_client(app: Any) -> Any:
    """A redis client of its own (short timeouts) for the heartbeat."""
    import redis

    return redis.Redis.from_url(app.conf.broker_url, socket_timeout=2, socket_connect_timeout=2)


# --------------------------------------------------------------------------- signals


def connect(app: Any) -> None:
    """Connect this app's worker signal handlers (they act only in this app's worker)."""
    state: dict[str, Any] = {}

    def ours(sender: Any) -> bool:
        return isinstance(sender, BanktasksTask) and sender.app is app

    def for_app(sender: Any) -> bool:
        return getattr(sender, "app", None) is app

    def worker_init(sender: Any = None, **_: Any) -> None:
        if not for_app(sender):
            return
        settings = app.runtime.settings_for(PLUGIN)
        folder = settings.folder(app.runtime.settings.var_dir)
        # prometheus-client creates its files with the process umask: owner-only, as every
        # file banktasks writes (the pool processes inherit it)
        os.umask(0o077)
        state["lock"] = prepare_folder(folder)
        use_folder(folder)
        state["folder"] = folder
        state["tasks"] = TaskMetrics()
        for impl in reversed(app.runtime.plugins.pm.hook.register_metrics.get_hookimpls()):
            impl.function(metrics=Metrics(impl.plugin_name))

    def prerun(sender: Any = None, task_id: Any = None, **_: Any) -> None:
        metrics = state.get("tasks")
        if metrics is not None and ours(sender) and task_id:
            metrics.started(sender, task_id)

    def postrun(sender: Any = None, task_id: Any = None, **kw: Any) -> None:
        metrics = state.get("tasks")
        if metrics is not None and ours(sender) and task_id:
            metrics.ended(sender, task_id, kw.get("state"))

    def failure(sender: Any = None, task_id: Any = None, **_: Any) -> None:
        metrics = state.get("tasks")
        if metrics is not None and ours(sender) and task_id:
            metrics.failed_elsewhere(sender, task_id)

    def retry(sender: Any = None, **_: Any) -> None:
        metrics = state.get("tasks")
        if metrics is not None and ours(sender):
            metrics.retried(sender)

    def process_gone(pid: Any = None, **_: Any) -> None:
        folder = state.get("folder")
        if folder is not None and pid:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, str(folder))

    def ready(sender: Any = None, **_: Any) -> None:
        if not for_app(sender) or "tasks" not in state:
            return
        hostname = str(sender.hostname)
        client = state["client"] = heartbeat_client(app)
        state["hostname"] = hostname
        heartbeat(app, hostname, client)
        seconds = app.runtime.settings_for(PLUGIN).heartbeat_seconds
        sender.timer.call_repeatedly(seconds, heartbeat, (app, hostname, client))

    def shutdown(sender: Any = None, **_: Any) -> None:
        if not for_app(sender) or "hostname" not in state:
            return
        try:
            state["client"].zrem(WORKERS_KEY, state["hostname"])
        except Exception as exc:
            log.warning("metrics_heartbeat_not_removed", error=f"{type(exc).__name__}: {exc}")

    receivers = [
        (signals.worker_init, worker_init),
        (signals.task_prerun, prerun),
        (signals.task_postrun, postrun),
        (signals.task_failure, failure),
        (signals.task_retry, retry),
        (signals.worker_process_shutdown, process_gone),
        (signals.worker_ready, ready),
        (signals.worker_shutdown, shutdown),
    ]
    for signal, receiver in receivers:
        signal.connect(receiver, weak=True)
    app.__dict__["_banktasks_metrics_receivers"] = receivers
    app.__dict__["_banktasks_metrics_state"] = state


def task_metrics(app: Any) -> TaskMetrics | None:
    """This worker's built-in task metrics (None outside a worker, or before it started)."""
    state = app.__dict__.get("_banktasks_metrics_state") or {}
    return state.get("tasks")
