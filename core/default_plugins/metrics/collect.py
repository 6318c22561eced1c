"""The scrape side: what the endpoint computes when Prometheus asks.

The workers' files (task counters and histograms, plugins' `register_metrics`), plus,
computed now: queue depth per queue (`LLEN` of its Redis lists, priority lists
included), workers up (heartbeats newer than three periods), each beat entry's last
success and due time (the `schedules` default plugin's Redis hashes), and every
plugin's `collect_metrics` samples.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core import get_logger, queue_lists
from core.db import utcnow
from core.default_plugins.metrics.api import CollectContext, metric_name
from core.default_plugins.metrics.worker import PLUGIN, WORKERS_KEY

log = get_logger("banktasks.metrics")
SCHEDULES_PLUGIN = "schedules"
SCHEDULES_KEY_PREFIX = "banktasks:schedules:"
"""The `schedules` default plugin's hash per beat entry (see its module docstring)."""


def _decoded(raw: dict[Any, Any]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): (
            v.decode() if isinstance(v, bytes) else str(v)
        )
        for k, v in raw.items()
    }


def _moment(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def schedule_due(schedule: Any, since: datetime, now: datetime) -> datetime | None:
    """The first due time of a Celery schedule after `since` (Celery's own arithmetic:
    `remaining_estimate`), or None for an object that is not a schedule."""
    estimate = getattr(schedule, "remaining_estimate", None)
    if estimate is None:
        from celery.schedules import schedule as interval

        if not hasattr(schedule, "total_seconds"):
            return None
        estimate = interval(schedule).remaining_estimate
    try:
        return now + estimate(since)  # type: ignore[no-any-return]
    except Exception:
        return None


class BanktasksCollector:
    """A prometheus-client collector of everything the endpoint serves."""

    def __init__(self, app: Any, folder: Path) -> None:
        self.app = app
        self.folder = folder

    def describe(self) -> list[Any]:
        """Nothing up front (the samples are only known at scrape time)."""
        return []

    def collect(self) -> Iterator[Any]:
        """Every metric, computed now."""
        yield from self._files()
        client = self.app.redis_client()
        yield from self._broker(client)
        yield from self._plugins()

    # -- the workers' files

    def _files(self) -> Iterator[Any]:
        from prometheus_client.multiprocess import MultiProcessCollector

        if not self.folder.is_dir():
            return
        collector = MultiProcessCollector(None, path=str(self.folder))
        for attempt in range(3):
            try:
                found = list(collector.collect())
            except FileNotFoundError:  # a worker wiped the folder while we read it
                if attempt == 2:
                    raise
                continue
            yield from found
            return

    # -- the broker: queues, workers, schedules

    def _broker(self, client: Any) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        lists = queue_lists(self.app)
        flat = [(queue, name) for queue, names in lists.items() for name in names]
        schedule = dict(self.app.conf.beat_schedule or {})
        entries = sorted(schedule) if self._schedules_tracked() else []
        now = time.time()
        settings = self.app.runtime.settings_for(PLUGIN)
        with client.pipeline(transaction=False) as pipe:
            for _queue, name in flat:
                pipe.llen(name)
            pipe.zcount(WORKERS_KEY, now - 3 * settings.heartbeat_seconds, "+inf")
            for entry in entries:
                pipe.hgetall(SCHEDULES_KEY_PREFIX + entry)
            replies = pipe.execute()
        depth = GaugeMetricFamily(
            "banktasks_queue_depth",
            "Messages waiting in a queue (all its priority lists), read from the broker",
            labels=["queue"],
        )
        totals = dict.fromkeys(lists, 0)
        for (queue, _name), length in zip(flat, replies, strict=False):
            totals[queue] += int(length)
        for queue, total in totals.items():
            depth.add_metric([queue], total)
        yield depth
        yield GaugeMetricFamily(
            "banktasks_workers_up",
            "Workers whose heartbeat is newer than three METRICS_HEARTBEAT_SECONDS",
            value=int(replies[len(flat)]),
        )
        if entries:
            states = [_decoded(raw) for raw in replies[len(flat) + 1 :]]
            yield from self._schedules(schedule, entries, states)

    def _schedules_tracked(self) -> bool:
        return SCHEDULES_PLUGIN in self.app.runtime.plugins.enabled()

    def _schedules(
        self, schedule: dict[str, Any], entries: list[str], states: list[dict[str, str]]
    ) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        now = utcnow()
        labels = ["entry", "task"]
        success = GaugeMetricFamily(
            "banktasks_schedule_last_success_timestamp_seconds",
            "When a beat entry's task last succeeded (Unix time); absent if never",
            labels=labels,
        )
        due = GaugeMetricFamily(
            "banktasks_schedule_due_timestamp_seconds",
            "When a beat entry must next succeed (Unix time): its first due time after the "
            "last success, or after tracking began; past it plus a grace time, it is missed",
            labels=labels,
        )
        for entry, state in zip(entries, states, strict=True):
            conf = schedule[entry]
            values = [entry, str(conf.get("task"))]
            last = _moment(state.get("last_success"))
            if last is not None:
                success.add_metric(values, last.timestamp())
            since = last or _moment(state.get("first_seen"))
            moment = schedule_due(conf.get("schedule"), since, now) if since else None
            if moment is not None:  # to the second: Celery reads the clock once more
                due.add_metric(values, round(moment.timestamp()))
        yield success
        yield due

    # -- the plugins' collect_metrics

    def _plugins(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        runtime = self.app.runtime
        up = GaugeMetricFamily(
            "banktasks_metrics_collector_up",
            "1 when a plugin's collect_metrics answered at this scrape, 0 when it failed",
            labels=["plugin"],
        )
        families: dict[str, Any] = {}
        now = utcnow()
        for impl in reversed(runtime.plugins.pm.hook.collect_metrics.get_hookimpls()):
            plugin = impl.plugin_name
            ctx = CollectContext(self.app, runtime.db, now, runtime.settings_for(plugin), plugin)
            try:
                samples = list(impl.function(ctx=ctx) or ())
                staged = dict(families)
                for sample in samples:
                    _add(staged, plugin, sample)
            except Exception as exc:
                log.error(
                    "metrics_collect_failed",
                    plugin=plugin,
                    error=f"{type(exc).__name__}: {exc}",
                    exc_info=True,
                )
                up.add_metric([plugin], 0)
                continue
            families = staged
            up.add_metric([plugin], 1)
        yield from families.values()
        yield up


def _add(families: dict[str, Any], plugin: str, sample: Any) -> None:
    """Add one sample (a dict) to its metric family, creating the family on first use."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    if not isinstance(sample, dict):
        raise TypeError(f"a sample must be a dict, not {type(sample).__name__}")
    kind = sample.get("type", "gauge")
    if kind not in ("gauge", "counter"):
        raise ValueError(f"sample type {kind!r}: 'gauge' or 'counter'")
    name = metric_name(plugin, str(sample["name"]).removesuffix("_total"))
    labels = {str(k): str(v) for k, v in (sample.get("labels") or {}).items()}
    value = float(sample["value"])
    names = sorted(labels)
    family: Any = families.get(name)
    if family is None:
        make = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        family = families[name] = make(name, str(sample.get("help") or name), labels=names)
    elif family._labelnames != tuple(names) or family.type != kind:
        raise ValueError(f"{name}: every sample needs the same type and label names")
    family.add_metric([labels[k] for k in names], value)
